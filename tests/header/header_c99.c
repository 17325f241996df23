/* qiao.h must compile alone as strict, pedantic C99 (flags in tests/api.cmake). */
#include <qiao.h>

int main(void) {
    qiao_selfcheck_params p = qiao_selfcheck_default_params();
    qiao_caption_params c = qiao_caption_default_params();
    const int ok = p.struct_size == sizeof p && c.struct_size == sizeof c;
    return (ok && qiao_version_number() == QIAO_VERSION_NUMBER) ? 0 : 1;
}
