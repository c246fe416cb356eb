"""What training and inference both feed the model: the prompt, the encoded conversation, its positions and
the collated batch."""
