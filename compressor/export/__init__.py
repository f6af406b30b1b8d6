"""edge export (issue 5)"""
