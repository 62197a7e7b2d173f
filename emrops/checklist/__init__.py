"""Executable checklists: steps are data (YAML), automatic checks run, people confirm the rest.

``model`` holds the definition, ``loader`` reads and validates YAML with file:line errors,
``commands`` resolves and runs automatic checks, ``runner`` walks the items (a state machine
driven through an IO interface the CLI implements), ``store`` keeps resumable run files,
``report`` renders runs as Markdown/JSON/JUnit and ``export`` renders checklists as documents.
"""
