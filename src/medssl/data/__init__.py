"""Reading, preprocessing and listing medical images."""
