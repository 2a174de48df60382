//! zai-proxy: a reverse proxy in front of Z.AI's GLM API.
