"""Fixtures for text-aware items: the exported sentence encoder, and a small topic data set.

The MiniLM export takes ~15 s on two cores, so it lives in pytest's cache directory
(``.pytest_cache/d/nextbehavior-text-encoder``) and is re-exported only when its files no longer
match their checksums; without the cache plugin it is exported once per session.
The topic data: four topics with their own words (space, cooking,
football, gardening), users who stay in one topic, and one unseen item text per topic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

TOPICS = {
    "space": ["Rocket launch to Mars", "Astronaut on the space station", "Galaxy telescope",
              "Moon landing mission", "Comet and asteroid belt", "Orbit around Jupiter"],
    "cooking": ["Pasta with tomato sauce", "Chocolate cake recipe", "Grilled chicken dinner",
                "Fresh bread baking", "Vegetable soup in the kitchen", "Pancakes for breakfast"],
    "football": ["Goalkeeper saves a penalty", "Striker scores in the final", "Football league",
                 "Soccer world cup match", "Midfielder passes the ball", "Stadium fans cheer"],
    "garden": ["Roses in the flower bed", "Planting tomato seedlings", "Pruning the apple tree",
               "Watering the lawn", "Compost for garden soil", "Tulip bulbs in spring"],
}  # fmt: skip
NEW = {
    "space": "Spacecraft docking with a satellite in orbit",
    "cooking": "Roast potatoes and a baked pie from the oven",
    "football": "Soccer team wins the football championship",
    "garden": "Growing herbs and flowers in the garden",
}


def topic_ids(topic: str) -> list[str]:
    return [f"{topic}-{n}" for n in range(len(TOPICS[topic]))]


@dataclass(frozen=True)
class TopicData:
    inter: Path  # RecBole .inter event log
    items: Path  # CSV item file: item_id,title
    topics: dict[str, list[str]] = field(default_factory=lambda: TOPICS)
    new: dict[str, str] = field(default_factory=lambda: NEW)  # one unseen item text per topic

    @staticmethod
    def ids(topic: str) -> list[str]:
        return topic_ids(topic)


@pytest.fixture(scope="session")
def text_encoder_dir(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The exported encoder: kept in pytest's cache directory when the cache plugin is on,
    else exported once per session into a temporary directory (``-p no:cacheprovider``)."""
    from nextbehavior.export.text_encoder import ensure_text_encoder

    cache = getattr(request.config, "cache", None)
    if cache is not None:
        path = Path(cache.mkdir("nextbehavior-text-encoder"))
    else:
        path = tmp_path_factory.mktemp("nextbehavior-text-encoder")
    ensure_text_encoder(path)
    return path


@pytest.fixture(scope="session")
def topic_data(tmp_path_factory: pytest.TempPathFactory) -> TopicData:
    """160 users, each with 12 events inside one of four topics; items with their titles."""
    root = tmp_path_factory.mktemp("topics")
    items = root / "items.csv"
    rows = [f'{i},"{t}"\n' for p in TOPICS for i, t in zip(topic_ids(p), TOPICS[p], strict=True)]
    items.write_text("item_id,title\n" + "".join(rows))
    rng = np.random.default_rng(0)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(160):
        topic = list(TOPICS)[u % 4]
        for step, item in enumerate(rng.choice(topic_ids(topic), size=12)):
            lines.append(f"u{u}\t{item}\t{1_000_000 + 100 * u + step}")
    inter = root / "events.inter"
    inter.write_text("\n".join(lines) + "\n")
    return TopicData(inter, items)
