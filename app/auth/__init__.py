"""Sign-in of people (citizens and auditors) with OpenID Connect, and their sessions."""
