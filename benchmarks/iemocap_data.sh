# Sourced by quiet_ab.sh and vs_reference.sh: the IEMOCAP-shaped files they measure on.
#
#   iemocap_data DIR N_TRAIN N_EVAL   # make_iemocap.py's files in DIR (seed 0), made only if absent
#
# The generator is MAKE, or ../shared/data/make_iemocap.py beside the checkout; PY runs it.
iemocap_data() {
  local dir="$1" n_train="$2" n_eval="$3" root make
  [[ -f "$dir/IEMOCAP_config.json" ]] && return 0
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  make="${MAKE:-$root/../shared/data/make_iemocap.py}"
  [[ -f "$make" ]] || make=/work/shared/data/make_iemocap.py
  "${PY:-python}" "$make" --out "$dir" --n-train "$n_train" --n-val "$n_eval" --n-test "$n_eval" --seed 0 > /dev/null
}
