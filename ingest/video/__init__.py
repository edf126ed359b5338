"""Videos and recordings as sources, one module per job: ``speech`` (the audio track and
whisper), ``scenes`` (cuts and keyframe candidates from the frames), ``timeline`` (clips
from cuts and speech) and ``analyzer`` (the one pass over a file that drives them)."""
