"""The commented starter protocol written by `stimgen init`."""

STARTER_PROTOCOL = """\
# A stimgen protocol. Check it with `stimgen validate protocol.yaml`, build it with
# `stimgen build protocol.yaml`. Every key is documented in docs/protocol.md;
# `stimgen schema` prints the JSON Schema for editor completion.

study:
  name: my-study                 # also names the output folder build/my-study/
  description: Faces at four intensities of the six basic emotions.
  authors: [Your Name]

seed: 1                          # every random choice of the build derives from it

backend:
  name: schematic                # embedded parametric faces on CPU; `emostyle` needs a GPU
                                 # and model weights (see docs/models.md)

identities:                      # each needs exactly one of seed / image / latent
  - {id: id01, seed: 1}
  - {id: id02, seed: 2}
  # - {id: p01, image: photos/p01.jpg, consent: "signed form 2026-03"}   # emostyle only

targets:
  # Emotion names: a basic emotion's word in any form names the basic emotion (happy or
  # happiness, sad/sadness, angry/anger, fear/fearful, surprise/surprised, disgust/disgusted,
  # contempt); any other name is one of the 28 circumplex terms (`all` for all of them).
  # Happy, Sad and Angry are circumplex terms too: write circumplex:happy for the term.
  # `stimgen emotions` lists every name with its source.
  emotions: [happiness, sadness, anger, fear, surprise, disgust]   # or e.g. [circumplex:happy, excited, calm]
  angles: []                     # extra angles in degrees (0 = pleasant, 90 = aroused)
  intensities: [0.25, 0.5, 0.75, 1.0]
  neutral: true                  # also a neutral face per identity

validation:
  rater: auto                    # geometric for schematic faces, emonet for emostyle
  tolerance:
    distance: 0.35               # flag stimuli whose achieved VA misses by more than this
    direction: 45                # ... or whose direction is off by more degrees than this
  weak_region: [242, 328.6]        # where published EmoStyle is weak (bored ... serene)

output:
  image_size: 512
  format: png
"""
