"""Read a Prometheus text exposition: the sum of a metric's samples whose labels include the given ones."""

from __future__ import annotations

import re

import httpx

SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class Scrape:
    def __init__(self, text: str) -> None:
        self.samples: list[tuple[str, dict[str, str], float]] = []
        for line in text.splitlines():
            match = SAMPLE.match(line)
            if match and not line.startswith("#"):
                labels = dict(LABEL.findall(match["labels"] or ""))
                self.samples.append((match["name"], labels, float(match["value"])))

    def value(self, name: str, **labels: str) -> float:
        return sum(v for n, have, v in self.samples if n == name and labels.items() <= have.items())

    def names(self) -> set[str]:
        return {n for n, _, _ in self.samples}


async def scrape(port: int) -> Scrape:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    response.raise_for_status()
    return Scrape(response.text)
