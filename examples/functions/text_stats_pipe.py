"""
title: Text stats
description: A function model that answers with statistics about the last user message.
Install it (as an admin) with
  POST /api/v1/functions/create {"id": "text_stats", "name": "Text stats", "content": <this file>}
and it appears in /api/models as `text_stats`. It streams one line per statistic.
"""

import re
from collections import Counter
from collections.abc import Iterator

WORD = re.compile(r"[\w']+")


class Pipe:
    def pipe(self, body: dict) -> Iterator[str]:
        text = _last_user_text(body.get("messages") or [])
        words = [w.lower() for w in WORD.findall(text)]
        yield f"Words: {len(words)}\n"
        yield f"Characters: {len(text)}\n"
        yield f"Sentences: {len([s for s in re.split(r'[.!?]+', text) if s.strip()])}\n"
        if words:
            # ties in alphabetical order, so the answer never depends on word order
            top = sorted(Counter(words).items(), key=lambda item: (-item[1], item[0]))[:3]
            listed = ", ".join(f"{word} ({count})" for word, count in top)
            yield f"Most frequent: {listed}\n"


def _last_user_text(messages: list) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # OpenAI content parts
                return " ".join(p.get("text", "") for p in content if p.get("type") == "text")
            return content or ""
    return ""
