"""placeholder"""
def add_object_detector_metadata(path, labels, post):
    return None
