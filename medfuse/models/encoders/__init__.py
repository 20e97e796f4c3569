"""Modality encoders. ``text`` holds the report encoders (registry ``text_encoders``); image
encoders live beside it. Import the submodules directly (they load torch)."""
