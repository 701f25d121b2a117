// The codecllm command (placeholder main while the subcommands are written).
#include "codecllm.h"

#include <stdio.h>

int main(void) {
    printf("codecllm %s\n", CLLM_VERSION_STRING);
    return 0;
}
