// Which backends this build has.
#include "codecllm.h"

#ifdef CLLM_HAVE_CUDA
#include "cuda/cllm_cuda.h"
#endif

const char *cllm_build_info(void) {
#ifdef CLLM_HAVE_CUDA
    return "codecllm " CLLM_VERSION_STRING ", CUDA " CLLM_CUDA_VERSION " (GPU architectures "
           CLLM_CUDA_ARCHS ")";
#else
    return "codecllm " CLLM_VERSION_STRING ", CPU only (built without CUDA)";
#endif
}

int cllm_backend_available(cllm_backend_kind k) {
    switch (k) {
    case CLLM_BACKEND_CPU: return 1;
    case CLLM_BACKEND_CUDA:
#ifdef CLLM_HAVE_CUDA
        return cllm_cuda_device_count() > 0;
#else
        return 0;
#endif
    case CLLM_BACKEND_AUTO: return 1;
    }
    return 0;
}
