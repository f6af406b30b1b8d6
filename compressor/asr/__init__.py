"""ASR models and tasks"""
