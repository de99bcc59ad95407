#include "pipeline/infotext.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <type_traits>

#include "core/error.h"
#include "core/unicode_text.h"

namespace sdpal {

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::string strip(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

// Python's \w for our purposes: ASCII letters, digits, '_' and any non-ASCII (UTF-8) byte.
bool is_word(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x80 || std::isalnum(u) || c == '_';
}

// json.dumps(text, ensure_ascii=False)
std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned char>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

// json.loads of a quoted string; returns false (leaving the text as is, like A1111's unquote)
// if it is not valid JSON.
bool json_unquote(const std::string& q, std::string* out) {
  if (q.size() < 2 || q.front() != '"' || q.back() != '"') return false;
  std::string s;
  auto hex4 = [&](size_t at, uint32_t* v) {
    if (at + 4 > q.size() - 1) return false;
    *v = 0;
    for (size_t k = at; k < at + 4; ++k) {
      const char c = q[k];
      const int d = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
                    : (c >= 'a' && c <= 'f')                    ? c - 'a' + 10
                    : (c >= 'A' && c <= 'F')                    ? c - 'A' + 10
                                                                : -1;
      if (d < 0) return false;
      *v = *v * 16 + static_cast<uint32_t>(d);
    }
    return true;
  };
  for (size_t i = 1; i + 1 < q.size(); ++i) {
    const char c = q[i];
    if (c == '"' || static_cast<unsigned char>(c) < 0x20) return false;  // as json.loads
    if (c != '\\') {
      s += c;
      continue;
    }
    if (++i + 1 > q.size() - 1) return false;
    switch (q[i]) {
      case '"':
        s += '"';
        break;
      case '\\':
        s += '\\';
        break;
      case '/':
        s += '/';
        break;
      case 'b':
        s += '\b';
        break;
      case 'f':
        s += '\f';
        break;
      case 'n':
        s += '\n';
        break;
      case 'r':
        s += '\r';
        break;
      case 't':
        s += '\t';
        break;
      case 'u': {
        uint32_t cp;
        if (!hex4(i + 1, &cp)) return false;
        i += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && i + 6 < q.size() && q[i + 1] == '\\' &&
            q[i + 2] == 'u') {
          uint32_t low;
          if (hex4(i + 3, &low) && low >= 0xDC00 && low < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            i += 6;
          }
        }
        unicode::append_utf8(s, static_cast<char32_t>(cp));
        break;
      }
      default:
        return false;
    }
  }
  *out = std::move(s);
  return true;
}

// A1111's infotext_utils.quote: JSON-quote values that would break the "k: v, k: v" syntax. Also
// a value that starts with '"' or starts or ends with white space: written bare, the reader would
// take its quotes for quoting and drop them ("\"ab\"" read back as "ab") or strip the spaces
// (found by fuzzing).
std::string quote_value(const std::string& v) {
  const auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  if (v.find_first_of(",\n:") == std::string::npos &&
      (v.empty() || (v.front() != '"' && !space(v.front()) && !space(v.back()))))
    return v;
  return json_quote(v);
}

struct Field {
  std::string key, value;
};

// One match of A1111's re_param = \s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)
// starting at `pos`; returns the end of the match or npos.
size_t match_field(const std::string& s, size_t pos, Field* f) {
  const size_t n = s.size();
  size_t i = pos;
  while (i < n && is_space(s[i])) ++i;
  if (i >= n || !is_word(s[i])) return std::string::npos;
  size_t k = i + 1;
  while (k < n && (is_word(s[k]) || s[k] == ' ' || s[k] == '-' || s[k] == '/')) ++k;
  if (k - i < 2 || k >= n || s[k] != ':') return std::string::npos;
  f->key = s.substr(i, k - i);
  size_t v = k + 1;
  while (v < n && is_space(s[v])) ++v;
  if (v < n && s[v] == '"') {  // quoted alternative: escapes and non-quote characters
    size_t q = v + 1;
    while (q < n) {
      if (s[q] == '\\' && q + 1 < n && s[q + 1] != '\n') {
        q += 2;
      } else if (s[q] != '\\' && s[q] != '"') {
        ++q;
      } else {
        break;
      }
    }
    if (q > v + 1 && q < n && s[q] == '"' && (q + 1 == n || s[q + 1] == ',')) {
      f->value = s.substr(v, q + 1 - v);
      return q + 1 == n ? n : q + 2;
    }
  }
  size_t e = v;
  while (e < n && s[e] != ',') ++e;
  f->value = s.substr(v, e - v);
  return e == n ? n : e + 1;
}

std::vector<Field> find_fields(const std::string& line) {
  std::vector<Field> fields;
  size_t pos = 0;
  while (pos < line.size()) {
    Field f;
    const size_t end = match_field(line, pos, &f);
    if (end == std::string::npos) {
      ++pos;
      continue;
    }
    fields.push_back(std::move(f));
    pos = end;
  }
  return fields;
}

template <typename T>
T parse_number(const std::string& key, const std::string& raw) {
  const std::string v = strip(raw);
  T out{};
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || end != v.data() + v.size() || v.empty())
    fail("infotext: invalid " + key + " value \"" + raw + "\"");
  if constexpr (std::is_floating_point_v<T>)
    if (!std::isfinite(out)) fail("infotext: " + key + " value \"" + raw + "\" is not finite");
  return out;
}

// Python's repr() of a float: shortest round-trip digits, fixed notation for decimal
// exponents -4..15, else d.ddde+XX.
std::string python_float_repr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value < 0 ? "-inf" : "inf";
  char buf[64];
  // Shortest round-trip digits, as d.ddde[+-]xx.
  const auto res = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const size_t e_at = sci.find('e');
  std::string digits = sci.substr(0, e_at);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  const int exp10 = std::atoi(sci.c_str() + e_at + 1);
  if (exp10 >= -4 && exp10 < 16) {
    std::string out;
    if (exp10 < 0) {
      out = "0." + std::string(static_cast<size_t>(-exp10 - 1), '0') + digits;
    } else if (static_cast<size_t>(exp10) + 1 >= digits.size()) {
      out = digits + std::string(exp10 + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, exp10 + 1) + "." + digits.substr(exp10 + 1);
    }
    return sign + out;
  }
  std::string mantissa = digits.substr(0, 1);
  if (digits.size() > 1) mantissa += "." + digits.substr(1);
  char exp_buf[16];
  std::snprintf(exp_buf, sizeof(exp_buf), "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
  return sign + mantissa + exp_buf;
}

}  // namespace

std::string a1111_number(double value) {
  // Gradio hands A1111 integral slider values as ints, so its files say "CFG scale: 7".
  if (std::isfinite(value) && value == std::trunc(value) && std::fabs(value) < 1e15)
    return std::to_string(static_cast<int64_t>(value));
  return python_float_repr(value);
}

std::string a1111_parameters(const GenerationInfo& info) {
  std::vector<std::pair<std::string, std::string>> fields;
  auto add = [&](const std::string& key, const std::string& value) {
    if (!value.empty()) fields.emplace_back(key, value);
  };
  add("Steps", std::to_string(info.steps));
  add("Sampler", info.sampler);
  add("Schedule type", info.schedule_type);
  add("CFG scale", a1111_number(info.cfg_scale));
  add("Seed", std::to_string(info.seed));
  add("Size", std::to_string(info.width) + "x" + std::to_string(info.height));
  add("Model hash", info.model_hash);
  add("Model", info.model);
  if (info.denoising_strength) add("Denoising strength", a1111_number(*info.denoising_strength));
  if (info.clip_skip > 1) add("Clip skip", std::to_string(info.clip_skip));
  // A1111's own key for its built-in tomesd setting (written only when on, as A1111 does).
  if (info.token_merging_ratio > 0)
    add("Token merging ratio", a1111_number(info.token_merging_ratio));
  add("RNG", info.rng);
  for (const auto& [k, v] : info.extra) add(k, v);
  add("Version", info.version);

  std::string params;
  for (const auto& [k, v] : fields) {
    if (!params.empty()) params += ", ";
    params += k + ": " + quote_value(v);
  }
  std::string text = info.prompt;
  if (!info.negative_prompt.empty()) text += "\nNegative prompt: " + info.negative_prompt;
  text += "\n" + params;
  return strip(text);
}

GenerationInfo parse_a1111_parameters(const std::string& text) {
  std::vector<std::string> lines;
  const std::string body = strip(text);
  size_t start = 0;
  while (true) {
    const size_t nl = body.find('\n', start);
    lines.push_back(body.substr(start, nl == std::string::npos ? std::string::npos : nl - start));
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  std::string last = lines.back();
  lines.pop_back();
  std::vector<Field> fields = find_fields(last);
  if (fields.size() < 3) {
    lines.push_back(last);
    fields.clear();
  }

  GenerationInfo info;
  bool in_negative = false;
  for (std::string line : lines) {
    line = strip(line);
    if (line.rfind("Negative prompt:", 0) == 0) {
      in_negative = true;
      line = strip(line.substr(16));
    }
    std::string& target = in_negative ? info.negative_prompt : info.prompt;
    target += (target.empty() ? "" : "\n") + line;
  }

  for (Field& f : fields) {
    std::string value = f.value;
    if (!value.empty() && value.front() == '"' && value.back() == '"')
      json_unquote(f.value, &value);
    const std::string& k = f.key;
    if (k == "Steps") {
      info.steps = parse_number<int>(k, value);
    } else if (k == "Sampler") {
      info.sampler = value;
    } else if (k == "Schedule type") {
      info.schedule_type = value;
    } else if (k == "CFG scale") {
      info.cfg_scale = parse_number<double>(k, value);
    } else if (k == "Seed") {
      info.seed = parse_number<uint64_t>(k, value);
    } else if (k == "Size") {
      const size_t x = value.find('x');
      if (x == std::string::npos) fail("infotext: invalid Size value \"" + value + "\"");
      info.width = parse_number<int>(k, value.substr(0, x));
      info.height = parse_number<int>(k, value.substr(x + 1));
    } else if (k == "Model hash") {
      info.model_hash = value;
    } else if (k == "Model") {
      info.model = value;
    } else if (k == "Denoising strength") {
      info.denoising_strength = parse_number<double>(k, value);
    } else if (k == "Clip skip") {
      // Values the format cannot hold are refused: the writer leaves out a clip skip below 2 and a
      // ratio of 0, so 0 or -1 would read back as 1 and 0 (found by fuzz_infotext).
      info.clip_skip = parse_number<int>(k, value);
      if (info.clip_skip < 1) fail("infotext: Clip skip " + value + " is below 1");
    } else if (k == "Token merging ratio") {
      info.token_merging_ratio = parse_number<double>(k, value);
      if (info.token_merging_ratio < 0)
        fail("infotext: Token merging ratio " + value + " is negative");
    } else if (k == "RNG") {
      info.rng = value;
    } else if (k == "Version") {
      info.version = value;
    } else {
      info.extra.emplace_back(k, value);
    }
  }
  return info;
}

}  // namespace sdpal
