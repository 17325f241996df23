/* sdk/core/config.c - reading a model config's JSON: integers and numbers
 * with ranges, one message shape for every section ("image config: key
 * 'patch' must be an integer in [1, 8192] (got 0.5)"). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/core.h"

qiao_status qc_json_int_value(const struct cJSON *it, const char *section, const char *key, int64_t lo, int64_t hi,
                              int64_t *out) {
    if (!cJSON_IsNumber(it))
        return qc_error(QIAO_ERR_FORMAT, "%s config: key '%s' must be an integer in [%lld, %lld]", section, key,
                        (long long)lo, (long long)hi);
    double v = it->valuedouble;
    if (!(v >= (double)lo && v <= (double)hi) || v != floor(v))
        return qc_error(QIAO_ERR_FORMAT, "%s config: key '%s' must be an integer in [%lld, %lld] (got %.17g)",
                        section, key, (long long)lo, (long long)hi, v);
    *out = (int64_t)v;
    return QIAO_OK;
}

qiao_status qc_json_int(const struct cJSON *obj, const char *section, const char *key, int64_t lo, int64_t hi,
                        int64_t *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it) return qc_error(QIAO_ERR_FORMAT, "%s config: missing key '%s'", section, key);
    return qc_json_int_value(it, section, key, lo, hi, out);
}

qiao_status qc_json_choice(const struct cJSON *obj, const char *section, const char *key, const char *const *names,
                           int n, int dflt, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = dflt;
    if (!v) return QIAO_OK;
    for (int i = 0; i < n; i++)
        if (cJSON_IsString(v) && !strcmp(v->valuestring, names[i])) {
            *out = i;
            return QIAO_OK;
        }
    char list[256] = "";
    for (int i = 0; i < n; i++) {
        const size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s\"%s\"", i ? (i + 1 == n ? " or " : ", ") : "", names[i]);
    }
    return qc_error(QIAO_ERR_FORMAT, "%s config: key '%s' must be %s", section, key, list);
}

qiao_status qc_json_float(const struct cJSON *obj, const char *section, const char *key, double lo, double hi,
                          float dflt, float *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it) {
        *out = dflt;
        return QIAO_OK;
    }
    if (!cJSON_IsNumber(it) || !(it->valuedouble >= lo && it->valuedouble <= hi))
        return qc_error(QIAO_ERR_FORMAT, "%s config: key '%s' must be a number in [%g, %g]", section, key, lo, hi);
    *out = (float)it->valuedouble;
    return QIAO_OK;
}
