# shellcheck shell=bash
# Helpers shared by the GPU checks (sourced, not run). The checks live beside
# it here and, once staged, flat in $GPU_APP as gpu-<check>.sh: the same
# relative path to this file in both places.

# Verdict rows of a check's PASS/FAIL table: `| step | verdict | detail |`.
# Checks print "${verdicts[@]}" or "${rows[@]}" at the end.
verdicts=()
rows=()
verdict() { verdicts+=("| $1 | $2 | $3 |"); }
row() { rows+=("| $1 | $2 | $3 |"); }

# PASS for exit status 0, else FAIL.
pass_fail() { [ "$1" = 0 ] && echo PASS || echo FAIL; }
# PASS if the command given succeeds, else FAIL.
pass() { if "$@"; then echo PASS; else echo FAIL; fi; }

# A bounded step's exit status, and whether it ran past its limit ($2 s).
exit_note() {
  case $1 in
    124 | 137) echo "rc=$1, timed out after $2 s" ;;
    *) echo "rc=$1" ;;
  esac
}

# The path of check $1's script: scripts/gpu/<check>.sh in the checkout,
# gpu-<check>.sh once staged.
gpu_script() {
  local here
  here=$(dirname "${BASH_SOURCE[0]}")
  if [ -f "$here/$1.sh" ]; then
    echo "$here/$1.sh"
  else
    echo "$here/gpu-$1.sh"
  fi
}
