"""Every host gets the digests of the secrets it was deployed with (see credentials.model)."""

from __future__ import annotations

from hastack.credentials.model import FINGERPRINTS_PATH, Secrets, fingerprints_text
from hastack.render.files import RenderedFile, text
from hastack.spec.model import Spec


def render_fingerprints(spec: Spec, secrets: Secrets) -> dict[str, list[RenderedFile]]:
    body = fingerprints_text(secrets)
    return {n.name: [text(FINGERPRINTS_PATH, body, mode=0o600)] for n in spec.nodes}
