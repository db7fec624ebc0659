"""Session fixtures for the image tests: a container engine and every image built.

Skipped, with the reason printed, only where neither docker nor podman can run; in
CI (CI set, as .ci/run and GitHub Actions do) a missing engine is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import container_images as ci
import pytest
from containers.engine import Containers


@pytest.fixture(scope="session")
def engine() -> ci.Engine:
    found, reason = ci.detect_engine()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must build and run the images, but {reason}", pytrace=False)
        pytest.skip(f"no container engine can run a container here: {reason}")
    return found


@pytest.fixture(scope="session")
def base_log(engine: ci.Engine) -> list[str]:
    """The base images: present, pulled, or stand-ins (podman without a registry)."""
    return ci.ensure_bases(engine)


@pytest.fixture(scope="session")
def images(engine: ci.Engine, base_log: list[str]) -> dict[str, ci.Built]:
    """Every service's image, built from the one Dockerfile as `make images` does.

    Tagged for this checkout (ci.checkout_tag), not with the chart's version.
    """
    return {service: ci.build(engine, service, ci.checkout_tag()) for service in ci.services()}


@pytest.fixture
def containers(engine: ci.Engine) -> Iterator[Containers]:
    """Containers a test starts; removed afterwards, their logs kept for a failure."""
    started = Containers(engine)
    yield started
    started.remove_all()
