"""ASR models and tasks (issue 4)"""
