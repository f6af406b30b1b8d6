"""What strategies share about a teacher's outputs: the teacher-output cache, transcripts and their
normaliser, pseudo-labels and their filters."""
