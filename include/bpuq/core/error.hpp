// Error reporting: bpuq::Error (host layers) and Status codes (firmware runtime).
#pragma once

#include <string>

#include "config.hpp"

#if BPUQ_HAS_EXCEPTIONS
#include <stdexcept>
#endif

BPUQ_NAMESPACE_BEGIN

/// Status codes returned by the parts of bpuq that also run in firmware (no exceptions).
enum class Status : int {
    ok = 0,
    invalid_argument = 1,  ///< a value outside what the function accepts
    shape_mismatch = 2,    ///< tensor shapes do not fit together
    out_of_memory = 3,     ///< caller-provided memory too small
    corrupt_data = 4,      ///< a serialized program failed validation
    unsupported = 5,       ///< an operation or combination the build does not provide
};

inline const char* status_name(Status s) noexcept {
    switch (s) {
        case Status::ok: return "ok";
        case Status::invalid_argument: return "invalid_argument";
        case Status::shape_mismatch: return "shape_mismatch";
        case Status::out_of_memory: return "out_of_memory";
        case Status::corrupt_data: return "corrupt_data";
        case Status::unsupported: return "unsupported";
    }
    return "unknown";
}

#if BPUQ_HAS_EXCEPTIONS
/// The one exception type bpuq throws. what() is "[bpuq.<id>] <message>"; the id is stable
/// so scripts can match on it, the message names the file/node/key and what is allowed.
class Error : public std::runtime_error {
public:
    Error(const std::string& id, const std::string& message)
        : std::runtime_error("[bpuq." + id + "] " + message), id_(id) {}
    const std::string& id() const noexcept { return id_; }

private:
    std::string id_;
};
#endif

BPUQ_NAMESPACE_END

// BPUQ_THROW(id, message): raise a bpuq::Error, or abort with the message in firmware builds.
#ifndef BPUQ_THROW
#if BPUQ_HAS_EXCEPTIONS
#define BPUQ_THROW(id, message) throw ::bpuq::Error((id), (message))
#else
#define BPUQ_THROW(id, message) BPUQ_ABORT(std::string(message).c_str())
#endif
#endif

// BPUQ_CHECK(cond, id, message): validate input; the message is only built on failure.
#define BPUQ_CHECK(cond, id, message)          \
    do {                                       \
        if (BPUQ_UNLIKELY(!(cond))) {          \
            BPUQ_THROW((id), (message));       \
        }                                      \
    } while (0)
