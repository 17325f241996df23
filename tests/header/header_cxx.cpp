// qiao.h must be usable from C++ (extern "C", no C-only constructs).
#include <qiao.h>

#include <cstring>

int main() {
    qiao_selfcheck_params p = qiao_selfcheck_default_params();
    qiao_caption_params c = qiao_caption_default_params();
    const char *v = qiao_version();
    const bool ok = p.struct_size == sizeof p && c.struct_size == sizeof c;
    return (ok && std::strcmp(v, QIAO_VERSION_STRING) == 0) ? 0 : 1;
}
