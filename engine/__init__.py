"""Deep Learning Lab's engine: all computation, free of any UI (it never imports streamlit)."""
