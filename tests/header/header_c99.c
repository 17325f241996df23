/* qiao.h must compile alone as strict, pedantic C99 (flags in tests/api.cmake). */
#include <qiao.h>

int main(void) {
    qiao_selfcheck_params p = qiao_selfcheck_default_params();
    return (p.struct_size == sizeof p && qiao_version_number() == QIAO_VERSION_NUMBER) ? 0 : 1;
}
