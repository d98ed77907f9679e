"""Model packs: a detector, an embedder and the embedder's card under one name (``dlib``, ``edgeface-xs``,
``edgeface-xxs``, ``custom``).

- :mod:`.catalog`: the packs and their pinned upstream files (data only);
- :mod:`.store`: installed packs on disk (``<models dir>/packs/<name>/``), fetching and verifying files;
- :mod:`.resolve`: which pack a process uses (``resolve_pack``);
- :mod:`.service`: ``list_packs``, ``install_pack``, ``remove_pack`` (audited), for the CLI and the API.

The engine of a pack is :func:`vigil.vision.engine.build_engine` ``(settings, pack)``.
"""

from vigil.vision.packs.catalog import PACKS, Pack, PackFile, get_pack

__all__ = ["PACKS", "Pack", "PackFile", "get_pack"]
