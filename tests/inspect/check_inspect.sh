#!/usr/bin/env bash
# Checks what gst-inspect-1.0 shows of the plugin's elements: every property
# in the "Element Properties:" section must have a description and a
# "Default:", and numeric ones (integer, float, double, fraction) a "Range:".
# The base-class properties name, parent and qos are exempt.
#
#   tests/inspect/check_inspect.sh [-p PLUGIN_DIR] [ELEMENT...]
#
# PLUGIN_DIR (the folder of libgstcudainfer.so) becomes GST_PLUGIN_PATH;
# without it GST_PLUGIN_PATH is used as set, else <repo>/target/release.
# ELEMENT defaults to every element the cudainfer plugin registers (at least
# the five below must be there). The plugin's details must show a version
# "<crate version>-<commit or RELEASE>", a release date and a real origin URL.
# Exits 1 on any problem, naming the element and property.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)

plugin_dir=""
while getopts "p:h" opt; do
  case $opt in
    p) plugin_dir=$OPTARG ;;
    h) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [-p PLUGIN_DIR] [ELEMENT...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
elements=("$@")

if [ -n "$plugin_dir" ]; then
  export GST_PLUGIN_PATH="$plugin_dir"
elif [ -z "${GST_PLUGIN_PATH:-}" ]; then
  export GST_PLUGIN_PATH="$top/target/release"
fi
export GST_INSPECT_NO_COLORS=1 PAGER=cat

command -v gst-inspect-1.0 >/dev/null || {
  echo "gst-inspect-1.0 not found (Debian: apt-get install gstreamer1.0-tools)" >&2
  exit 1
}

status=0
expected=(cudapreprocess trtinfer inferoverlay infertrack inferpublish)
if [ ${#elements[@]} -eq 0 ]; then
  if ! plugin_out=$(gst-inspect-1.0 cudainfer 2>&1); then
    echo "FAIL: gst-inspect-1.0 cannot find the cudainfer plugin (GST_PLUGIN_PATH=$GST_PLUGIN_PATH):" >&2
    printf '%s\n' "$plugin_out" | sed 's/^/  /' >&2
    exit 1
  fi
  # The feature list: "  name: long name" lines after the details block.
  mapfile -t elements < <(awk '/^  [a-z0-9]+: / { sub(/^  /, ""); sub(/:.*/, ""); print }' <<<"$plugin_out")
  for e in "${expected[@]}"; do
    [[ " ${elements[*]} " == *" $e "* ]] || { echo "FAIL: the plugin registers no $e" >&2; status=1; }
  done
  detail() { awk -v k="$1" 'index($0, "  " k " ") == 1 { sub("^  " k " +", ""); print; exit }' <<<"$plugin_out"; }
  version=$(detail Version)
  case $version in
    *-*) [ "${version%%-*}" != "${version#*-}" ] || { echo "FAIL: plugin version '$version' repeats itself" >&2; status=1; } ;;
    *) echo "FAIL: plugin version '$version' has no commit suffix" >&2; status=1 ;;
  esac
  [[ $(detail "Source release date") =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2} ]] ||
    { echo "FAIL: plugin release date '$(detail "Source release date")' is not a date" >&2; status=1; }
  case $(detail "Origin URL") in
    https://*.invalid/* | "" | *example*) echo "FAIL: plugin origin URL '$(detail "Origin URL")' is a placeholder" >&2; status=1 ;;
  esac
  echo "ok plugin: version $version, ${#elements[@]} elements: ${elements[*]}"
fi
for element in "${elements[@]}"; do
  if ! out=$(gst-inspect-1.0 "$element" 2>&1); then
    echo "FAIL $element: gst-inspect-1.0 cannot find it (GST_PLUGIN_PATH=$GST_PLUGIN_PATH):" >&2
    printf '%s\n' "$out" | sed 's/^/  /' >&2
    status=1
    continue
  fi

  # The cudainfer plugin must come from GST_PLUGIN_PATH, not a stale install.
  # Here-strings, not pipes: awk exits at the first match, and a pipe's writer
  # would then die of SIGPIPE, which pipefail turns into a failure.
  plugin=$(awk '/^Plugin Details:/ {p=1} p && $1 == "Name" {print $2; exit}' <<<"$out")
  if [ "$plugin" = cudainfer ]; then
    file=$(awk '/^Plugin Details:/ {p=1} p && $1 == "Filename" {print $2; exit}' <<<"$out")
    from_path=0
    IFS=: read -r -a dirs <<<"$GST_PLUGIN_PATH"
    for d in "${dirs[@]}"; do
      [ -n "$d" ] && [ -d "$d" ] || continue
      case "$(realpath "$file")" in "$(realpath "$d")"/*) from_path=1 ;; esac
    done
    if [ $from_path -eq 0 ]; then
      echo "FAIL $element: loaded from $file, not from GST_PLUGIN_PATH=$GST_PLUGIN_PATH" >&2
      status=1
    fi
  fi

  if ! printf '%s\n' "$out" | awk -v element="$element" '
    function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
    function problem(what) {
      if (name == "name" || name == "parent" || name == "qos") {
        printf "note %s: base-class property %s: %s (ignored)\n", element, name, what
      } else {
        printf "FAIL %s: property %s: %s\n", element, name, what > "/dev/stderr"
        bad++
      }
    }
    function flush() {
      if (name == "") return
      count++
      if (desc == "" || desc == "(null)") problem("no description")
      if (block !~ /Default:/) problem("no default shown")
      if (block ~ /(^|[ \n])(Unsigned )?(Integer|Integer64|Long|Float|Double|Fraction)\. / && block !~ /Range:/)
        problem("numeric but no range shown")
      name = ""; desc = ""; block = ""
    }
    /^Element Properties:/ { inside = 1; seen = 1; next }
    inside && /^[^ \t]/ { flush(); inside = 0; next }
    inside && /^  [^ \t]/ {
      flush()
      line = substr($0, 3); pos = index(line, ":")
      if (pos == 0) { name = trim(line); desc = "" }
      else { name = trim(substr(line, 1, pos - 1)); desc = trim(substr(line, pos + 1)) }
      next
    }
    inside && /^   / { block = block "\n" $0 }
    END {
      flush()
      if (!seen) { printf "FAIL %s: no \"Element Properties:\" section\n", element > "/dev/stderr"; exit 1 }
      if (count == 0) { printf "FAIL %s: no properties listed\n", element > "/dev/stderr"; exit 1 }
      printf "%s %s: %d properties checked\n", (bad ? "FAIL" : "ok"), element, count
      exit bad ? 1 : 0
    }'; then
    status=1
  fi
done
exit $status
