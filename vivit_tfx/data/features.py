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
# Evaluation slices (written by ingestion; absent from clips ingested before them).
SOURCE = 'source'                      # bytes: layout + folders naming neither class nor split
DURATION_BAND = 'duration_band'        # bytes: the video's duration band, e.g. '5-10s'
SLICE_FEATURES = (SOURCE, DURATION_BAND)  # TFMA slices by each (and the run's per-slice minimum)

# RLVS class folders, in label order.
CLASS_NAMES = ('NonViolence', 'Violence')

# Transformed features (output of `preprocessing_fn`).
CLIP_XF = 'clip_xf'                   # float32 [T, H, W, 3], normalised per channel

