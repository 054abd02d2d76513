// Small text utilities for config handling: splitting lists, trimming, nearest-key suggestions.
#pragma once

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "../core/config.hpp"

BPUQ_NAMESPACE_BEGIN
namespace config {

inline std::string trim(const std::string& s) {
    std::size_t b = 0, e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
    return s.substr(b, e - b);
}

/// Split on any of `separators`, trimming pieces; empty pieces are dropped unless keep_empty.
inline std::vector<std::string> split(const std::string& s, const std::string& separators, bool keep_empty = false) {
    std::vector<std::string> out;
    std::string cur;
    for (char ch : s) {
        if (separators.find(ch) != std::string::npos) {
            std::string t = trim(cur);
            if (!t.empty() || keep_empty) out.push_back(t);
            cur.clear();
        } else {
            cur += ch;
        }
    }
    std::string t = trim(cur);
    if (!t.empty() || keep_empty) out.push_back(t);
    return out;
}

inline std::string join(const std::vector<std::string>& items, const std::string& sep) {
    std::string s;
    for (std::size_t i = 0; i < items.size(); ++i) {
        if (i) s += sep;
        s += items[i];
    }
    return s;
}

/// Levenshtein distance (case-insensitive), for "did you mean" suggestions.
inline std::size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                              std::tolower(static_cast<unsigned char>(b[j - 1]));
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (same ? 0 : 1)});
        }
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

/// The closest candidate, or "" when nothing is reasonably close.
inline std::string nearest(const std::string& word, const std::vector<std::string>& candidates) {
    std::string best;
    std::size_t best_d = std::string::npos;
    for (const auto& c : candidates) {
        const std::size_t d = edit_distance(word, c);
        if (d < best_d) {
            best_d = d;
            best = c;
        }
    }
    const std::size_t limit = std::max<std::size_t>(2, word.size() / 3);
    return best_d <= limit ? best : std::string();
}

}  // namespace config
BPUQ_NAMESPACE_END
