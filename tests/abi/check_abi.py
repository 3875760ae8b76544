#!/usr/bin/env python3
"""The hand-written C layouts of plugins/cudainfer/src/meta/analytics/ffi.rs
against GStreamer's own headers: size, alignment and every field's offset of
each #[repr(C)] struct, the size of each documented type alias, and the
value of each constant, as the C compiler
sees them with the installed gstreamer-analytics-1.0 headers.

    tests/abi/check_abi.py rust [FFI_RS] > layouts.txt   needs rustc
    tests/abi/check_abi.py c layouts.txt                 needs cc, pkg-config
    tests/abi/check_abi.py [all]                         both, in one place

The two halves can run on different machines of the same architecture: the
Debian 13 chroot (scripts/trixie-chroot.sh) has GStreamer 1.26's headers but
no Rust toolchain. Which C name a Rust item stands for is read from the
item's doc comment: its first `backticked` word (`GstAnalyticsMtd`); Rust
field names are the C field names. Exit status: 0 all equal, 1 a mismatch,
77 (meson's "skipped") without the headers, e.g. GStreamer before 1.24.
"""

import os
import re
import subprocess
import sys
import tempfile

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FFI = os.path.join(TOP, "plugins", "cudainfer", "src", "meta", "analytics", "ffi.rs")
PKG = "gstreamer-analytics-1.0"
HEADER = "gst/analytics/analytics.h"
SKIP = 77


def items(source):
    """(kind, c_name, rust_name, text, fields) for each documented
    #[repr(C)] struct and const; the `use std::ffi` and `type` lines."""
    lines = source.splitlines()
    prelude, found = [], []
    doc = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if re.match(r"use std::ffi::", line) or re.match(r"type \w+ = [^;]+;$", line):
            prelude.append(line)
        if line.startswith("///"):
            doc.append(line)
            i += 1
            continue
        c_name = None
        m = re.search(r"`(\w+)`", doc[0]) if doc else None
        if m:
            c_name = m.group(1)
        if line == "#[repr(C)]" and c_name:
            m = re.match(r"(?:pub(?:\(\w+\))? )?struct (\w+) \{$", lines[i + 1])
            if not m:
                sys.exit("ffi.rs line %d: #[repr(C)] without a struct I can read" % (i + 1))
            body, j = [lines[i], lines[i + 1]], i + 2
            fields = []
            while lines[j] != "}":
                body.append(lines[j])
                f = re.match(r"\s+(?:pub(?:\(\w+\))? )?(\w+):", lines[j])
                if f:
                    fields.append(f.group(1))
                j += 1
            body.append("}")
            found.append(("struct", c_name, m.group(1), "\n".join(body), fields))
            i = j + 1
            doc = []
            continue
        m = re.match(r"type (\w+) = [^;]+;$", line)
        if m and c_name and c_name.startswith("G"):
            found.append(("type", c_name, m.group(1), "", []))
        m = re.match(r"const (\w+): (\w+) = [^;]+;$", line)
        if m and c_name and re.fullmatch(r"[A-Z0-9_]+", c_name):
            found.append(("const", c_name, m.group(1), line, []))
        doc = []
        i += 1
    return prelude, found


def rust_layouts(ffi_path):
    prelude, found = items(open(ffi_path).read())
    if not found:
        sys.exit("no documented #[repr(C)] struct or const found in %s" % ffi_path)
    prints = []
    for kind, c_name, rust_name, _, fields in found:
        if kind == "struct":
            prints.append('println!("{} size {}", %r, std::mem::size_of::<%s>());' % (c_name, rust_name))
            prints.append('println!("{} align {}", %r, std::mem::align_of::<%s>());' % (c_name, rust_name))
            for f in fields:
                prints.append(
                    'println!("{} offset {}", %r, std::mem::offset_of!(%s, %s));'
                    % ("%s.%s" % (c_name, f), rust_name, f)
                )
        elif kind == "type":
            prints.append('println!("{} size {}", %r, std::mem::size_of::<%s>());' % (c_name, rust_name))
        else:
            prints.append('println!("{} value {}", %r, %s as i128);' % (c_name, rust_name))
    program = "#![allow(dead_code, unused_imports)]\n%s\n%s\nfn main() {\n%s\n}\n" % (
        "\n".join(prelude),
        "\n".join(text for _, _, _, text, _ in found),
        "\n".join("    " + p.replace("'", '"') for p in prints),
    )
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = os.path.join(tmp, "layouts.rs"), os.path.join(tmp, "layouts")
        open(src, "w").write(program)
        subprocess.run(["rustc", "--edition", "2021", "-O", "-o", exe, src], check=True)
        return subprocess.run([exe], check=True, capture_output=True, text=True).stdout


def c_layouts(expected):
    """Runs the C side for the names in `expected`; None when the headers
    are not there (the reason printed)."""
    try:
        version = subprocess.run(["pkg-config", "--modversion", PKG], capture_output=True, text=True)
    except FileNotFoundError:
        print("skip: no pkg-config")
        return None
    if version.returncode != 0:
        print("skip: no %s headers (GStreamer before 1.24, or its -dev package missing)" % PKG)
        return None
    cflags = subprocess.run(["pkg-config", "--cflags", "--libs", PKG], check=True, capture_output=True, text=True).stdout.split()
    body = []
    for line in expected.splitlines():
        name, what, _ = line.split()
        if what == "size":
            body.append('printf("%%s size %%zu\\n", "%s", sizeof(%s));' % (name, name))
        elif what == "align":
            body.append('printf("%%s align %%zu\\n", "%s", _Alignof(%s));' % (name, name))
        elif what == "offset":
            struct, field = name.split(".")
            body.append('printf("%%s offset %%zu\\n", "%s", offsetof(%s, %s));' % (name, struct, field))
        else:
            body.append('printf("%%s value %%lld\\n", "%s", (long long) (%s));' % (name, name))
    program = "#include <stddef.h>\n#include <stdio.h>\n#include <%s>\nint main(void) {\n%s\n  return 0;\n}\n" % (
        HEADER,
        "\n".join("  " + b for b in body),
    )
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = os.path.join(tmp, "layouts.c"), os.path.join(tmp, "layouts")
        open(src, "w").write(program)
        subprocess.run(["cc", "-o", exe, src] + cflags, check=True)
        out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
    print("C side: %s %s" % (PKG, version.stdout.strip()))
    return out


def compare(rust, c):
    rust_lines, c_lines = rust.splitlines(), c.splitlines()
    bad = 0
    for r, cl in zip(rust_lines, c_lines):
        name, what, rv = r.split()
        cv = cl.split()[2]
        if rv == cv:
            print("ok   %-50s %-6s %s" % (name, what, rv))
        else:
            print("FAIL %-50s %-6s Rust %s, C %s" % (name, what, rv, cv))
            bad += 1
    if len(rust_lines) != len(c_lines):
        print("FAIL: %d Rust lines, %d C lines" % (len(rust_lines), len(c_lines)))
        bad += 1
    print("%s: %d checks, %d mismatches" % ("FAIL" if bad else "ok", len(rust_lines), bad))
    return 1 if bad else 0


def main(argv):
    mode = argv[1] if len(argv) > 1 else "all"
    if mode == "rust":
        sys.stdout.write(rust_layouts(argv[2] if len(argv) > 2 else FFI))
        return 0
    if mode == "c":
        rust = open(argv[2]).read()
    elif mode == "all":
        rust = rust_layouts(FFI)
    else:
        print(__doc__)
        return 0 if mode in ("-h", "--help") else 2
    c = c_layouts(rust)
    if c is None:
        return SKIP
    return compare(rust, c)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
