from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

MEDIA = Path(__file__).resolve().parents[2] / "scenarios" / "media"


@pytest.fixture
def tone_wav() -> Path:
    """1 s of 16-bit stereo 44.1 kHz tone, the WAV the built-in scenarios stream."""
    return MEDIA / "tone-1s.wav"
