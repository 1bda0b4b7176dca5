#!/usr/bin/env python3
"""Sums a GNU ld link map by input archive: what the size of the static ferryd is made of."""
import re,sys,collections
sizes=collections.Counter()
pend=None
for line in open(sys.argv[1]):
    m=re.match(r'^ \.(text|rodata|data|sdata|tdata|init_array|fini_array|data\.rel\.ro|gcc_except_table|eh_frame)(\S*)\s*$',line)
    if m: pend=True; continue
    m=re.match(r'^ \.(text|rodata|data|eh_frame)\S*\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+(\S+)',line)
    if m: sz=int(m.group(2),16); f=m.group(3)
    else:
        m=re.match(r'^\s+0x[0-9a-f]{8,}\s+0x([0-9a-f]+)\s+(\S+)',line)
        if not (m and pend): pend=None; continue
        sz=int(m.group(1),16); f=m.group(2); pend=None
    lib=re.sub(r'\(.*','',f).split('/')[-1]
    sizes[lib]+=sz
tot=sum(sizes.values())
for k,v in sizes.most_common(10): print(f"{v/1024:8.1f} KiB {100*v/tot:5.1f}% {k}")
