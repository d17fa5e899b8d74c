# Generates src/compile/graph/font_table.rs (run: python3 tools/font_table.py >
# src/compile/graph/font_table.rs; needs fontTools and Debian's fonts-dejavu-core
# and fonts-liberation): per-character advance widths, the
# larger of DejaVu Sans and Liberation Sans (Arial's metrics), in 1/1000 em.
from fontTools.ttLib import TTFont
import math
D = "/usr/share/fonts/truetype/dejavu/"
L = "/usr/share/fonts/truetype/liberation/"
faces = {"REGULAR": [D+"DejaVuSans.ttf", L+"LiberationSans-Regular.ttf"],
         "BOLD": [D+"DejaVuSans-Bold.ttf", L+"LiberationSans-Bold.ttf"]}
FIRST, LAST = 0x20, 0x4FF
EXTRA = [0x2013,0x2014,0x2018,0x2019,0x201C,0x201D,0x2022,0x2026,0x20AC,0x2190,0x2192,0x21B3,0x2713,0xFFFD]
def widths(paths, cps):
    fonts = [TTFont(p) for p in paths]
    out = []
    for cp in cps:
        best = 0
        for f in fonts:
            g = f.getBestCmap().get(cp)
            if g is None: continue
            adv = f["hmtx"][g][0] / f["head"].unitsPerEm
            best = max(best, adv)
        # 0 = not covered by either font; a combining mark has width 0 too, so
        # those are stored as 1 (1/1000 em) to keep them apart.
        out.append(0 if best == 0 and not any(f.getBestCmap().get(cp) is not None for f in fonts) else max(1, math.ceil(best*1000)))
    return out
def arr(name, vals):
    s = f"pub const {name}: [u16; {len(vals)}] = [\n"
    for i in range(0, len(vals), 20):
        s += "    " + ", ".join(str(v) for v in vals[i:i+20]) + ",\n"
    return s + "];\n"
out = ["//! Generated: advance widths (1/1000 em) of U+0020..=U+04FF and a few symbols,",
       "//! each the larger of DejaVu Sans and Liberation Sans (Arial's metrics), so a",
       "//! width computed here bounds what either font draws. 0 means neither font has",
       "//! the character. Regenerate with `tools/font_table.py`.",
       "", f"pub const FIRST: u32 = {FIRST:#x};", ""]
for name, paths in faces.items():
    out.append(arr(name, widths(paths, range(FIRST, LAST+1))))
out.append("/// Characters outside the range above, with (regular, bold) widths.")
reg = widths(faces["REGULAR"], EXTRA); bold = widths(faces["BOLD"], EXTRA)
out.append("pub const EXTRA: [(char, u16, u16); %d] = [" % len(EXTRA))
for cp, r, b in zip(EXTRA, reg, bold):
    out.append(f"    ('\\u{{{cp:04x}}}', {r}, {b}),")
out.append("];")
# vertical metrics (max of both), in 1/1000 em
asc = max(math.ceil(TTFont(p)["hhea"].ascent*1000/TTFont(p)["head"].unitsPerEm) for ps in faces.values() for p in ps)
desc = max(math.ceil(-TTFont(p)["hhea"].descent*1000/TTFont(p)["head"].unitsPerEm) for ps in faces.values() for p in ps)
out.append(f"\n/// The fonts' largest ascent and descent (hhea), 1/1000 em.\npub const ASCENT: u16 = {asc};\npub const DESCENT: u16 = {desc};")
print("\n".join(out))
