/* datasets/shapes/vocab.c - the words of the shapes world: shapes, colours,
 * sizes, places, their synonyms in Chinese and English, the answer
 * vocabulary and the held-out (cogent) colour+shape pairs. */
#include <string.h>

#include "shapes.h"

#define MAXF 3 /* synonyms per item, NULL-terminated */

static const char *const SHAPE_NAME[SHAPES_NSHAPES] = {"circle", "square", "triangle", "star",
                                                       "hexagon", "cross", "diamond"};
static const char *const SHAPE_FORM[SHAPES_NLANGS][SHAPES_NSHAPES][MAXF] = {
    {{"圆形", "圆"}, {"正方形", "方块"}, {"三角形"}, {"五角星", "星形"}, {"六边形"}, {"十字形", "十字"}, {"菱形"}},
    {{"circle", "disk"}, {"square"}, {"triangle"}, {"star"}, {"hexagon"}, {"cross", "plus sign"},
     {"diamond", "rhombus"}}};

static const char *const COLOR_NAME[SHAPES_NCOLORS] = {"red", "orange", "yellow", "green",
                                                       "blue", "purple", "brown", "black"};
static const char *const COLOR_FORM[SHAPES_NLANGS][SHAPES_NCOLORS][MAXF] = {
    {{"红色"}, {"橙色"}, {"黄色"}, {"绿色"}, {"蓝色"}, {"紫色"}, {"棕色", "褐色"}, {"黑色"}},
    {{"red"}, {"orange"}, {"yellow"}, {"green"}, {"blue"}, {"purple", "violet"}, {"brown"}, {"black"}}};

static const char *const SIZE_NAME[SHAPES_NSIZES] = {"small", "large"};
static const char *const SIZE_FORM[SHAPES_NLANGS][SHAPES_NSIZES][MAXF] = {
    {{"小"}, {"大"}}, {{"small", "little"}, {"large", "big"}}};

static const char *const PLACE_NAME[SHAPES_NPLACES] = {
    "top-left", "top", "top-right", "left", "center", "right", "bottom-left", "bottom", "bottom-right"};
static const char *const PLACE_FORM[SHAPES_NLANGS][SHAPES_NPLACES][MAXF] = {
    {{"左上角", "左上方"}, {"上方", "上边"}, {"右上角", "右上方"}, {"左边", "左侧"}, {"中间", "中央"},
     {"右边", "右侧"}, {"左下角", "左下方"}, {"下方", "下边"}, {"右下角", "右下方"}},
    {{"top left", "upper left"}, {"top", "top edge"}, {"top right", "upper right"}, {"left", "left side"},
     {"center", "middle"}, {"right", "right side"}, {"bottom left", "lower left"}, {"bottom", "bottom edge"},
     {"bottom right", "lower right"}}};

static const char *const NUM_KEY[7] = {"0", "1", "2", "3", "4", "5", "6"};
static const char *const NUM_TEXT[SHAPES_NLANGS][7] = {{"零", "一", "二", "三", "四", "五", "六"},
                                                       {"zero", "one", "two", "three", "four", "five", "six"}};
static const char *const PLACE_ANSWER_EN[SHAPES_NPLACES] = {
    "top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right"};

/* Chosen so each shape of the set is held out once with a different colour
 * and each held-out pair's colour and shape stay common in train. */
static const int COGENT[SHAPES_NCOGENT][2] = {{0, 2}, {4, 3}, {3, 4}, {2, 5}}; /* (colour, shape) */

const char *shapes_name(shapes_kind kind, int id) {
    switch (kind) {
    case SHAPES_K_SHAPE: return id >= 0 && id < SHAPES_NSHAPES ? SHAPE_NAME[id] : NULL;
    case SHAPES_K_COLOR: return id >= 0 && id < SHAPES_NCOLORS ? COLOR_NAME[id] : NULL;
    case SHAPES_K_SIZE: return id >= 0 && id < SHAPES_NSIZES ? SIZE_NAME[id] : NULL;
    case SHAPES_K_PLACE: return id >= 0 && id < SHAPES_NPLACES ? PLACE_NAME[id] : NULL;
    }
    return NULL;
}

const char *shapes_form(shapes_kind kind, int id, shapes_lang lang, int k) {
    if ((int)lang < 0 || (int)lang >= SHAPES_NLANGS || k < 0 || k >= MAXF || !shapes_name(kind, id)) return NULL;
    switch (kind) {
    case SHAPES_K_SHAPE: return SHAPE_FORM[lang][id][k];
    case SHAPES_K_COLOR: return COLOR_FORM[lang][id][k];
    case SHAPES_K_SIZE: return SIZE_FORM[lang][id][k];
    case SHAPES_K_PLACE: return PLACE_FORM[lang][id][k];
    }
    return NULL;
}

const char *shapes_answer_key(int a) {
    if (a == SHAPES_A_YES) return "yes";
    if (a == SHAPES_A_NO) return "no";
    if (a >= SHAPES_A_NUM0 && a < SHAPES_A_COLOR0) return NUM_KEY[a - SHAPES_A_NUM0];
    if (a >= SHAPES_A_COLOR0 && a < SHAPES_A_SHAPE0) return COLOR_NAME[a - SHAPES_A_COLOR0];
    if (a >= SHAPES_A_SHAPE0 && a < SHAPES_A_SIZE0) return SHAPE_NAME[a - SHAPES_A_SHAPE0];
    if (a >= SHAPES_A_SIZE0 && a < SHAPES_A_PLACE0) return SIZE_NAME[a - SHAPES_A_SIZE0];
    if (a >= SHAPES_A_PLACE0 && a < SHAPES_NANSWERS) return PLACE_NAME[a - SHAPES_A_PLACE0];
    return NULL;
}

const char *shapes_answer_text(int a, shapes_lang lang) {
    int zh = lang == SHAPES_ZH;
    if ((int)lang < 0 || (int)lang >= SHAPES_NLANGS) return NULL;
    if (a == SHAPES_A_YES) return zh ? "是" : "yes";
    if (a == SHAPES_A_NO) return zh ? "否" : "no";
    if (a >= SHAPES_A_NUM0 && a < SHAPES_A_COLOR0) return NUM_TEXT[lang][a - SHAPES_A_NUM0];
    if (a >= SHAPES_A_COLOR0 && a < SHAPES_A_SHAPE0) return COLOR_FORM[lang][a - SHAPES_A_COLOR0][0];
    if (a >= SHAPES_A_SHAPE0 && a < SHAPES_A_SIZE0) return SHAPE_FORM[lang][a - SHAPES_A_SHAPE0][0];
    if (a >= SHAPES_A_SIZE0 && a < SHAPES_A_PLACE0) return SIZE_FORM[lang][a - SHAPES_A_SIZE0][0];
    if (a >= SHAPES_A_PLACE0 && a < SHAPES_NANSWERS)
        return zh ? PLACE_FORM[0][a - SHAPES_A_PLACE0][0] : PLACE_ANSWER_EN[a - SHAPES_A_PLACE0];
    return NULL;
}

const char *shapes_qtype_name(int t) {
    static const char *const N[SHAPES_NQTYPES] = {"count", "attribute", "exist", "spatial", "compare"};
    return t >= 0 && t < SHAPES_NQTYPES ? N[t] : NULL;
}

const char *shapes_split_name(shapes_split s) {
    static const char *const N[SHAPES_NSPLITS] = {"train", "val", "test", "cogent"};
    return (int)s >= 0 && s < SHAPES_NSPLITS ? N[s] : NULL;
}

int shapes_split_parse(const char *s) {
    for (int i = 0; s && i < SHAPES_NSPLITS; i++)
        if (!strcmp(s, shapes_split_name((shapes_split)i))) return i;
    return -1;
}

void shapes_cogent_pair(int i, int *color, int *shape) {
    if (i < 0 || i >= SHAPES_NCOGENT) i = 0;
    *color = COGENT[i][0];
    *shape = COGENT[i][1];
}

int shapes_is_cogent_pair(int color, int shape) {
    for (int i = 0; i < SHAPES_NCOGENT; i++)
        if (COGENT[i][0] == color && COGENT[i][1] == shape) return 1;
    return 0;
}
