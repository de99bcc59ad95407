// HTML5 named character references, as ftfy decodes them (see ftfy_fix.h).
#pragma once
#include <optional>
#include <string_view>

namespace sdpal {

// Looks up a named reference by its name without '&' and ';' ("amp", "eacute", "EACUTE").
// Knows every HTML5 name that ends in ';' plus the all-caps spelling of lower-case names whose
// all-caps form is not itself an entity (ftfy decodes "&EACUTE;" as upper-cased "é").
std::optional<std::u32string_view> find_html_entity(std::string_view name);

}  // namespace sdpal
