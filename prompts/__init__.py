"""The Dutch prompt templates Vraagbaak ships (see README.md in this folder).

A package only so that the files are installed with Vraagbaak and found where it is installed:
``rag.prompts`` reads them with ``importlib.resources.files("prompts")``. No code here.
"""
