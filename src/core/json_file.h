// JSON documents of our own (analyses, calibrations): read with their key order kept, errors that
// name the file and what it should have been, and atomic writes.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace sdpal {

// `what` names the document in errors: "cannot open <what> file P" / "P: not valid JSON
// (corrupted or truncated <what> file?)".
nlohmann::ordered_json read_json_document(const std::string& path, const std::string& what);
// Pretty-printed (2 spaces, final newline), via write_file_atomic.
void write_json_document(const std::string& path, const nlohmann::ordered_json& j);

// Python's json module writes NaN, Infinity and -Infinity as bare words, which are not JSON
// (diffusers' configs hold e.g. "lambda_min_clipped": -Infinity). Returns `text` with those words
// outside strings quoted ("-Infinity"), for readers that accept them as strings.
std::string quote_python_number_words(const std::string& text);

}  // namespace sdpal
