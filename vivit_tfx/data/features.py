"""Names of every feature of the raw clip record and of the transformed features (one place)."""

# Raw clip record (written by ingestion / VideoExampleGen).
FRAMES = 'frames'                      # bytes[N]: JPEG frames at the sampling rate, then ''
LABEL = 'label'                        # int64: class index (see CLASS_NAMES)
VIDEO_ID = 'video_id'                  # bytes: '<class folder>/<file stem>', unique per video
SOURCE_PATH = 'source_path'            # bytes: path relative to the input root
CONTAINER = 'container'                # bytes: file extension, e.g. 'mp4'
NUM_FRAMES_ORIGINAL = 'num_frames_original'  # int64
FPS = 'fps'                            # float
DURATION_S = 'duration_s'              # float
WIDTH = 'width'                        # int64: source width in pixels
HEIGHT = 'height'                      # int64: source height in pixels

# RLVS class folders, in label order.
CLASS_NAMES = ('NonViolence', 'Violence')

# Transformed features (output of `preprocessing_fn`).
CLIP_XF = 'clip_xf'                   # float32 [T, H, W, 3], normalised per channel

