"""Writes the bad-file corpus (run from the repo root: python tests/data/corpus/make_corpus.py).

The files are committed; this script documents their exact bytes (non-UTF-8, BOM, CRLF) and
regenerates them. Each file is one case of the validation issue; tests/data/test_bad_files.py
asserts the exact outcome of each.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent
H = b"USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE\n"
ITEMS_H = b"ITEM_ID,GENRES,PRICE,CREATION_TIMESTAMP,TITLE\n"
T = 1700000000


def good(n: int, start: int = 0) -> bytes:
    return b"".join(b"g%d,i%d,%d,click,1\n" % (i, i % 7, T + i) for i in range(start, start + n))


CORPUS = {
    "empty.csv": b"",
    "blank_first_line.csv": b"\n" + H + good(2),
    "header_only.csv": H,
    "duplicate_header.csv": b"USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,item_id\nu1,i1,1700000000,click,i1\n",
    "missing_column.csv": b"USER_ID,ITEM_ID,EVENT_TYPE\nu1,i1,click\n",
    "milliseconds.csv": H
    + b"".join(b"u%d,i%d,%d,click,1\n" % (i, i, T * 1000 + i) for i in range(3)),
    "non_utf8_header.csv": b"USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,EVENT_VALUE,CAF\xc9\n",
    "non_utf8_row.csv": H + good(3) + b"u9,caf\xe9,1700000100,click,1\n" + good(2, 3),
    "latin1_file.csv": H
    + b"".join(b"u%d,caf\xe9%d,%d,click,1\n" % (i, i, T + i) for i in range(5)),
    "bom_crlf.csv": b"\xef\xbb\xbf" + H.replace(b"\n", b"\r\n") + good(3).replace(b"\n", b"\r\n"),
    "quoted_commas.csv": ITEMS_H
    + b'i1,"Action|Crime",9.5,1700000000,"Hello, World"\n'
    + b'i2,Drama,1,1700000000,"The ""Best"" One"\n'
    + b'i3,Drama,2,1700000000,"Line one\nline two, with a comma"\n'
    + b"i4,,,,\n",
    "stray_quote.csv": ITEMS_H
    + b"i1,Drama,1,1700000000,5'11\" tall\ni2,Drama,2,1700000000,plain\n",
    "unclosed_quote.csv": H + good(2) + b'u2,"i2,1700000000,click,1\nu3,i3,1700000000,click,1\n',
    "blank_lines.csv": H + good(2) + b"\n\r\n" + good(2, 2) + b"\n\n",
    "bad_rows.csv": H
    + good(2)
    + b"u2,i2,yesterday,click,1\n"  # line 4
    + b"u3,i3,1700000000.5,click,1\n"  # 5
    + b",i4,1700000000,click,1\n"  # 6
    + b"u5,i5,1700000000,click,1,extra\n"  # 7
    + b"u6,i6,1700000000\n"  # 8
    + b"u7,i7,1700000000,hover,1\n"  # 9
    + b"u" * 300
    + b",i8,1700000000,click,1\n"  # 10
    + b"u9,i9,1700000000123,click,1\n"  # 11
    + b"u10,i10,0,click,1\n"  # 12
    + b"u11,i11,1700000000,click,abc\n"  # 13
    + good(3, 2),  # 14-16
    "impressions.csv": b"USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,IMPRESSION\n"
    + b"u1,i1,1700000000,click,i1|i2|i3\n"
    + b"u2,i1,1700000001,click,i1||i2\n"
    + b"u3,i1,1700000002,click,i1|\n"
    + b"u4,i1,1700000003,click,\n",
    "long_categorical.csv": ITEMS_H
    + b"i1,Action|"
    + b"x" * 1000
    + b",1,1700000000,ok\n"
    + b"i2,Action|"
    + b"y" * 1001
    + b",1,1700000000,too long\n",
    "long_user_id.csv": b"USER_ID,SEGMENT\n" + b"a" * 256 + b",s\n" + b"b" * 257 + b",s\n",
}

if __name__ == "__main__":
    for name, data in CORPUS.items():
        (HERE / name).write_bytes(data)
    print(f"wrote {len(CORPUS)} files to {HERE}")
