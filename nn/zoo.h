/* The model zoo: the five families of the seed study, written out as spec text (nn/model.h), so
 * a zoo model and a user's own spec file go through one parser.
 *
 * Usage:
 *     struct qd_zoo_opts o = {.depth = 20, .width = 1.0f};
 *     char *spec;
 *     if (qd_zoo_spec("resnet_v1", 3, 32, 32, 10, &o, &spec) == QD_OK) { ...; free(spec); }
 *
 * Families: custom (compact CNN), resnet_v1 (CIFAR ResNet, depth 6n+2: 8, 14, 20, ...),
 * resnet_v2 (pre-activation), mobilenet_v1, mobilenet_v2 (width multiplier). Inputs of 28x28x1
 * and 32x32x3 (any size >= 8 works); the first layers keep stride 1, as CIFAR variants do. */
#ifndef QD_NN_ZOO_H
#define QD_NN_ZOO_H

#include "core/err.h"

struct qd_zoo_opts {
    int depth;   /* resnets: 6n+2; 0 = 20 */
    float width; /* mobilenets: width multiplier; 0 = 1.0 */
};

/* The family names, NULL-terminated. */
extern const char *const qd_zoo_families[];

qd_err qd_zoo_spec(const char *family, int c, int h, int w, int nclass,
                   const struct qd_zoo_opts *o, char **spec);

#endif
