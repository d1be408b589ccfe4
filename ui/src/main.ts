import "./app.css";
import { mount } from "svelte";
import App from "./App.svelte";
import { takeTokenFromUrl } from "./lib/api/client";

takeTokenFromUrl();
const app = mount(App, { target: document.getElementById("app")! });
export default app;
