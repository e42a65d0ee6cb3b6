"""Small Streamlit helpers shared by the pages: state keys, URL state, drawing."""
