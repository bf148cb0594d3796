#!/bin/sh
# Fails if the runtime's object files (the arguments, or one ;-separated list) reference any
# allocator; checks one of them is the runtime (it must call the validator) so that an empty or
# wrong object cannot pass.
set -eu
objs=$(echo "$*" | tr ';' ' ')
syms=$(for o in $objs; do nm -u "$o"; done)
echo "$syms" | grep -q qd_qm_validate_into || { echo "$objs: not the runtime objects"; exit 1; }
if echo "$syms" | grep -Ew 'malloc|calloc|realloc|free|aligned_alloc|posix_memalign|mmap|strdup'; then
  echo "$objs allocate"; exit 1
fi
echo "$objs: no allocator referenced"
