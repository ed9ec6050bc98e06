"""Who is calling and what they may do now: the gate every tool call and REST request passes."""
