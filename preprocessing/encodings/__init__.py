"""The token encodings, one module each, behind one interface.

* :mod:`~preprocessing.encodings.registry`: one registration per encoding (name, token format,
  saved files, class): the only table to edit when an encoding is added.
* :mod:`~preprocessing.encodings.base`: the :class:`~preprocessing.encodings.base.Encoding`
  interface; :mod:`~preprocessing.encodings.grammar`: sampling grammars.
* :mod:`~preprocessing.encodings.loader`: build an encoding by name, or from a folder's saved files.
* :mod:`~preprocessing.encodings.reference` (music21) and :mod:`~preprocessing.encodings.remi`
  (MidiTok over symusic, with :mod:`~preprocessing.encodings.remi_grammar`).
* :mod:`~preprocessing.encodings.midi_container`: the MIDI container checks both run first.

This file imports nothing, so importing one encoding never imports another.
"""
