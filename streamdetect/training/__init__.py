"""Training and evaluation: datasets -> face-crop sequences -> self-blended fakes -> train -> evaluate.

The crops come from the same detector and `align_crop` as the live service, so a model never sees a face
prepared differently from how it will be served.
"""
