// hello_cpp.cpp — gloam.h from C++17: an Echo function with the pull API and RAII.
#include <cstdio>
#include <memory>
#include <string>

#include "gloam.h"

namespace {

struct WorkerDeleter {
    void operator()(gloam_worker_t *w) const noexcept { gloam_worker_free(w); }
};
using WorkerPtr = std::unique_ptr<gloam_worker_t, WorkerDeleter>;

std::string describe(gloam_status_e st, gloam_error_t &err) {
    std::string s = gloam_status_str(st);
    if (err.message != nullptr) {
        s += ": ";
        s += err.message;
    }
    gloam_error_free(&err);
    return s;
}

}  // namespace

int main() {
    gloam_error_t err{};
    gloam_worker_t *raw = nullptr;
    gloam_status_e st = gloam_worker_new_from_env("cpp", &raw, &err);
    if (st != GLOAM_OK) {
        std::fprintf(stderr, "hello-cpp: %s\n", describe(st, err).c_str());
        return 1;
    }
    WorkerPtr worker(raw);
    for (;;) {
        gloam_call_t *call = nullptr;
        st = gloam_worker_recv(worker.get(), &call, &err);
        if (st == GLOAM_E_SHUTDOWN) {
            gloam_error_free(&err);
            return 0;
        }
        if (st != GLOAM_OK) {
            std::fprintf(stderr, "hello-cpp: %s\n", describe(st, err).c_str());
            return 1;
        }
        if (call == nullptr) {
            continue;  // woken up
        }
        const uint8_t *data = nullptr;
        size_t len = 0;
        (void)gloam_call_input(call, &data, &len);
        st = gloam_worker_complete(worker.get(), call, data, len, &err);
        if (st != GLOAM_OK) {
            std::fprintf(stderr, "hello-cpp: %s\n", describe(st, err).c_str());
        }
    }
}
