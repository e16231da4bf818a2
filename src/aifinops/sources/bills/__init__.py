"""Bills: FOCUS, AWS CUR, Azure and OCI cost exports -> FOCUS-shaped cost lines."""
