"""Images as sources, one module per job: ``decode`` (files to upright RGB images, safely),
``classify`` (visual tags and features), ``people`` (the people in a photo), ``ocr``
(text in pictures and scanned pages) and ``describe`` (the analyser that combines them,
and the text that is embedded)."""
