"""nginx configuration text as nginx itself reads it (standard library only).

Input is the output of ``nginx -T``: every file nginx read, each after a line
``# configuration file <path>:``. From it:

* ``parse()`` tokenizes like ngx_conf_read_token (quotes, escapes, ``${var}``, comments) and
  builds directives that keep their file and line;
* ``NginxConfig`` resolves ``include`` (globs against the files in the dump, relative to the
  main file's folder, as nginx does), so every directive points at the file it came from.

No Ansible imports: shipped to targets as sse.stack module_utils ``sse_diagnose_nginx_parse``.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass

__all__ = ["COMBINED", "Directive", "NginxConfig", "NginxSyntaxError", "parse", "split_dump"]

DUMP_MARKER = re.compile(r"^# configuration file (.+):$")
# nginx's predefined log format
COMBINED = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent"'
)


class NginxSyntaxError(ValueError):
    """The configuration text cannot be tokenized (nginx -T never prints such a file)."""


@dataclass
class Directive:
    name: str
    args: list[str]
    file: str
    line: int
    block: list[Directive] | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def text(self) -> str:
        """The directive as one line of configuration (block content left out)."""
        words = " ".join([self.name, *(_quote(a) for a in self.args)])
        return words + (" { ... }" if self.block is not None else ";")

    def children(self, name: str | None = None) -> list[Directive]:
        return [d for d in self.block or [] if name is None or d.name == name]


def _quote(arg: str) -> str:
    if arg == "" or re.search(r"[\s;{}\"'#]", arg):
        return "'" + arg.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return arg


# --------------------------------------------------------------------------------------------
# nginx -T output and the tokenizer
# --------------------------------------------------------------------------------------------


def split_dump(text: str) -> list[tuple[str, str]]:
    """(path, content) of each file in ``nginx -T`` output, in the order nginx read them."""
    files: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        match = DUMP_MARKER.match(line)
        if match:
            files.append((match.group(1), []))
        elif files:
            files[-1][1].append(line)
    return [(path, "\n".join(lines) + "\n") for path, lines in files]


def _tokens(text: str, file: str) -> list[tuple[str, int, bool]]:
    """(word, line, quoted) tokens; ';', '{', '}' come as unquoted one-character words."""
    out: list[tuple[str, int, bool]] = []
    i, n, line = 0, len(text), 1
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
            continue
        if ch in " \t\r":
            i += 1
            continue
        if ch == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        if ch in ";{}":
            out.append((ch, line, False))
            i += 1
            continue
        start_line = line
        if ch in "\"'":
            quote, i, word = ch, i + 1, []
            while True:
                if i >= n:
                    raise NginxSyntaxError(f"{file}:{start_line}: unterminated {quote} string")
                c = text[i]
                if c == "\\" and i + 1 < n:
                    nxt = text[i + 1]
                    word.append({"t": "\t", "r": "\r", "n": "\n"}.get(nxt, nxt))
                    if nxt not in ("t", "r", "n", "\\", '"', "'"):
                        word[-1] = "\\" + nxt
                    line += nxt == "\n"
                    i += 2
                    continue
                if c == quote:
                    i += 1
                    break
                line += c == "\n"
                word.append(c)
                i += 1
            out.append(("".join(word), start_line, True))
            continue
        word, in_var = [], False
        while i < n:
            c = text[i]
            if c == "\\" and i + 1 < n:
                word.append(text[i : i + 2])
                i += 2
                continue
            if c == "{" and word and word[-1] == "$":
                in_var = True
            elif c == "}" and in_var:
                in_var = False
            elif c in " \t\r\n;{}" or (c in "\"'" and not word):
                break
            word.append(c)
            i += 1
        out.append(("".join(word), start_line, False))
    return out


def parse(text: str, file: str = "-") -> list[Directive]:
    """Directives of one file (includes not resolved)."""
    stack: list[list[Directive]] = [[]]
    words: list[str] = []
    first_line = 0
    for word, line, quoted in _tokens(text, file):
        if not quoted and word == ";":
            if not words:
                raise NginxSyntaxError(f"{file}:{line}: unexpected ';'")
            stack[-1].append(Directive(words[0], words[1:], file, first_line))
            words = []
        elif not quoted and word == "{":
            if not words:
                raise NginxSyntaxError(f"{file}:{line}: unexpected '{{'")
            block: list[Directive] = []
            stack[-1].append(Directive(words[0], words[1:], file, first_line, block))
            stack.append(block)
            words = []
        elif not quoted and word == "}":
            if words or len(stack) == 1:
                raise NginxSyntaxError(f"{file}:{line}: unexpected '}}'")
            stack.pop()
        else:
            if not words:
                first_line = line
            words.append(word)
    if words:
        raise NginxSyntaxError(f"{file}: unexpected end of file, expecting ';' or '}}'")
    if len(stack) != 1:
        raise NginxSyntaxError(f"{file}: unexpected end of file, expecting '}}'")
    return stack[0]


def _glob_match(pattern: str, path: str) -> bool:
    """glob(3) as nginx's include uses it: '*' stays within one path segment, no dot files."""
    pat_parts, path_parts = pattern.split("/"), path.split("/")
    if len(pat_parts) != len(path_parts):
        return False
    for pat, part in zip(pat_parts, path_parts):
        if part.startswith(".") and not pat.startswith(".") and part != pat:
            return False
        if not fnmatch.fnmatchcase(part, pat):
            return False
    return True


class NginxConfig:
    """The whole configuration from ``nginx -T`` output, includes expanded in place."""

    def __init__(self, files: list[tuple[str, str]], main: str | None = None) -> None:
        if not files:
            raise NginxSyntaxError("no '# configuration file' sections in the nginx -T output")
        self.files = dict(files)
        self.order = [path for path, _ in files]
        self.main = main or self.order[0]
        self.prefix = os.path.dirname(self.main)
        self.warnings: list[str] = []
        self._parsed = {path: parse(content, path) for path, content in files}
        self.tree = self._expand(self._parsed.get(self.main, []), 0)

    @classmethod
    def from_dump(cls, text: str, main: str | None = None) -> NginxConfig:
        return cls(split_dump(text), main)

    def _expand(self, directives: list[Directive], depth: int) -> list[Directive]:
        out: list[Directive] = []
        for d in directives:
            if d.name == "include" and d.block is None and len(d.args) == 1 and depth < 32:
                pattern = d.args[0]
                if not pattern.startswith("/"):
                    pattern = os.path.join(self.prefix, pattern)
                if any(c in pattern for c in "*?["):
                    matched = sorted(p for p in self.order if _glob_match(pattern, p))
                else:
                    matched = [pattern] if pattern in self._parsed else []
                    if not matched:
                        self.warnings.append(f"{d.where}: include {d.args[0]} is not in the dump")
                for path in matched:
                    out.extend(self._expand(self._parsed[path], depth + 1))
                continue
            if d.block is not None:
                d = Directive(d.name, d.args, d.file, d.line, self._expand(d.block, depth))
            out.append(d)
        return out

    def http(self) -> Directive | None:
        return next((d for d in self.tree if d.name == "http" and d.block is not None), None)

    def servers(self) -> list[Directive]:
        http = self.http()
        return http.children("server") if http else []

    def upstream(self, name: str) -> Directive | None:
        http = self.http()
        for d in http.children("upstream") if http else []:
            if d.args and d.args[0] == name:
                return d
        return None

    def log_formats(self) -> dict[str, str]:
        formats = {"combined": COMBINED}
        http = self.http()
        for d in http.children("log_format") if http else []:
            args = [a for a in d.args[1:] if not a.startswith("escape=")]
            if d.args:
                formats[d.args[0]] = "".join(args)
        return formats
