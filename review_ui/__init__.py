"""The tierline review UI: a Streamlit app that talks to the API through ``api.client``."""
