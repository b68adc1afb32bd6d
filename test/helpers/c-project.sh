#!/bin/sh
# Writes a C project of N files (default 60) into DIR: each file a function
# that does some arithmetic, main() adds up their results; a Makefile builds
# `prog` from objects with the compiler's flags in CFLAGS. Deterministic: the
# same N gives the same sources (and, built with the same compiler, the same binary).
#   c-project.sh DIR [N]
set -e
dir=$1
n=${2:-60}
mkdir -p "$dir"
cd "$dir"
: > decls.h
i=0
while [ "$i" -lt "$n" ]; do
  echo "long f$i(long x);" >> decls.h
  cat > "f$i.c" <<EOF
#include "decls.h"
long f$i(long x) {
  long acc = $i;
  for (long k = 0; k < 64; k++) acc = acc * 6364136223846793005L + (x ^ k) + $i;
  return acc % 1000003;
}
EOF
  i=$((i + 1))
done
{
  echo '#include <stdio.h>'
  echo '#include "decls.h"'
  echo 'int main(void) {'
  echo '  long sum = 0;'
  i=0
  while [ "$i" -lt "$n" ]; do echo "  sum += f$i($i);"; i=$((i + 1)); done
  printf '%s\n' '  printf("%ld\n", sum);'
  echo '  return 0;'
  echo '}'
} > main.c
objs=$(i=0; while [ "$i" -lt "$n" ]; do printf 'f%d.o ' "$i"; i=$((i + 1)); done)
cat > Makefile <<EOF
CFLAGS ?= -O2
OBJS = main.o $objs
prog: \$(OBJS)
	\$(CC) \$(CFLAGS) -o \$@ \$(OBJS)
%.o: %.c decls.h
	\$(CC) \$(CFLAGS) -c -o \$@ \$<
clean:
	rm -f prog \$(OBJS)
EOF
