/* A program built only against the installed qiao package. */
#include <qiao.h>
#include <stdio.h>
#include <string.h>

int main(void) {
    if (strcmp(qiao_version(), QIAO_VERSION_STRING) != 0) return 1;
    qiao_model_file *f = NULL;
    if (qiao_model_file_open("/nonexistent.safetensors", &f) != QIAO_ERR_IO) return 1;
    printf("qiao %s: %s\n", qiao_version(), qiao_last_error());
    return 0;
}
