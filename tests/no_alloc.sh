#!/bin/sh
# Fails if the object file $1 references any allocator; checks it is the runtime (it must call
# the validator) so that an empty or wrong object cannot pass.
set -eu
syms=$(nm -u "$1")
echo "$syms" | grep -q qd_qm_validate_into || { echo "$1: not the runtime object"; exit 1; }
if echo "$syms" | grep -Ew 'malloc|calloc|realloc|free|aligned_alloc|posix_memalign|mmap|strdup'; then
  echo "$1 allocates"; exit 1
fi
echo "$1: no allocator referenced"
